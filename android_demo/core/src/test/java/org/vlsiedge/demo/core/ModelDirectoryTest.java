package org.vlsiedge.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.stream.Stream;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** Checking a pushed model directory: a good one verifies; every kind of damage is named. */
public class ModelDirectoryTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  private File copyOfExport() throws IOException {
    Path src = GoldenTest.exportDir().toPath();
    Path dst = tmp.newFolder("model").toPath();
    try (Stream<Path> files = Files.list(src)) {
      for (Path p : (Iterable<Path>) files::iterator) {
        if (Files.isRegularFile(p)) {
          Files.copy(p, dst.resolve(p.getFileName()), StandardCopyOption.REPLACE_EXISTING);
        }
      }
    }
    return dst.toFile();
  }

  private static String manifestText(File dir) throws IOException {
    return new String(Files.readAllBytes(new File(dir, "manifest.json").toPath()), StandardCharsets.UTF_8);
  }

  private static void writeManifest(File dir, String text) throws IOException {
    Files.write(new File(dir, "manifest.json").toPath(), text.getBytes(StandardCharsets.UTF_8));
  }

  @Test
  public void aGoodExportVerifiesAndPrefersTheSmallestProgram() throws Exception {
    ModelDirectory model = ModelDirectory.open(copyOfExport());
    ModelDirectory.Verified v = model.verify(null, null);
    assertEquals(model.manifest.appArtifacts().get(0).name, v.artifact.name);
    assertTrue(v.program.getName().endsWith(".pte"));
    assertEquals("tokenizer.json", v.tokenizer.getName());
    assertNotNull(model.manifest.eosTexts.get(0));
    long[] last = {0, 0};
    model.verify(v.artifact.name, (done, total) -> {
      last[0] = done;
      last[1] = total;
    });
    assertEquals(v.program.length() + v.tokenizer.length(), last[1]);
    assertEquals(last[1], last[0]);
  }

  @Test
  public void aTruncatedProgramIsNamed() throws Exception {
    File dir = copyOfExport();
    ModelDirectory model = ModelDirectory.open(dir);
    File pte = new File(dir, model.manifest.appArtifacts().get(0).files.get("program").path);
    try (RandomAccessFile f = new RandomAccessFile(pte, "rw")) {
      f.setLength(f.length() / 2);
    }
    ManifestException e = assertThrows(ManifestException.class, () -> model.verify(null, null));
    assertTrue(e.getMessage(), e.getMessage().contains(pte.getName()) && e.getMessage().contains("truncated"));
  }

  @Test
  public void aCorruptTokenizerIsNamed() throws Exception {
    File dir = copyOfExport();
    File tokenizer = new File(dir, "tokenizer.json");
    try (RandomAccessFile f = new RandomAccessFile(tokenizer, "rw")) {
      f.seek(10);
      int b = f.read();
      f.seek(10);
      f.write(b ^ 1);
    }
    ManifestException e = assertThrows(ManifestException.class, () -> ModelDirectory.open(dir).verify(null, null));
    assertTrue(e.getMessage(), e.getMessage().contains("tokenizer.json") && e.getMessage().contains("sha256"));
  }

  @Test
  public void aMissingProgramIsNamed() throws Exception {
    File dir = copyOfExport();
    ModelDirectory model = ModelDirectory.open(dir);
    File pte = new File(dir, model.manifest.appArtifacts().get(0).files.get("program").path);
    assertTrue(pte.delete());
    ManifestException e = assertThrows(ManifestException.class, () -> model.verify(null, null));
    assertTrue(e.getMessage(), e.getMessage().contains(pte.getName()) && e.getMessage().contains("missing"));
  }

  @Test
  public void anUnknownArtifactListsTheAvailableOnes() throws Exception {
    ModelDirectory model = ModelDirectory.open(copyOfExport());
    ManifestException e = assertThrows(ManifestException.class, () -> model.verify("executorch-int2", null));
    assertTrue(e.getMessage(), e.getMessage().contains(model.manifest.appArtifacts().get(0).name));
  }

  @Test
  public void manifestProblemsNameTheFileAndKey() throws Exception {
    File dir = copyOfExport();
    String good = manifestText(dir);

    writeManifest(dir, good.replace("\"format_version\": 2", "\"format_version\": 1"));
    ManifestException e = assertThrows(ManifestException.class, () -> ModelDirectory.open(dir));
    assertTrue(e.getMessage(), e.getMessage().contains("manifest.json") && e.getMessage().contains("format_version 1"));

    writeManifest(dir, good.replace("\"before_image_text\"", "\"before_image_txt\""));
    e = assertThrows(ManifestException.class, () -> ModelDirectory.open(dir));
    assertTrue(e.getMessage(), e.getMessage().contains("missing key prompt.before_image_text"));

    writeManifest(dir, good.replaceFirst("\"size\": \\d+", "\"size\": \"big\""));
    e = assertThrows(ManifestException.class, () -> ModelDirectory.open(dir));
    assertTrue(e.getMessage(), e.getMessage().contains("image.size: expected a number"));

    writeManifest(dir, good.substring(0, good.length() / 2));
    e = assertThrows(ManifestException.class, () -> ModelDirectory.open(dir));
    assertTrue(e.getMessage(), e.getMessage().contains("not valid JSON"));

    assertTrue(new File(dir, "manifest.json").delete());
    e = assertThrows(ManifestException.class, () -> ModelDirectory.open(dir));
    assertTrue(e.getMessage(), e.getMessage().contains("manifest.json: missing"));

    e = assertThrows(ManifestException.class, () -> ModelDirectory.open(new File(dir, "nope")));
    assertTrue(e.getMessage(), e.getMessage().contains("adb push"));
  }
}
