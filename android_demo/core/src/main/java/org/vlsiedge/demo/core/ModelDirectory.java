package org.vlsiedge.demo.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * A model directory pushed to the device (or on a laptop): {@code manifest.json}, {@code
 * tokenizer.json} and the {@code .pte} programs. {@link #open} reads and checks the manifest;
 * {@link #verify} checks one program and the tokenizer against their size and sha256 before the
 * runtime ever sees them, so a truncated {@code adb push} fails with the file's name.
 */
public final class ModelDirectory {
  public static final String MANIFEST = "manifest.json";

  public final File dir;
  public final Manifest manifest;

  /** A program ready to load: both files verified. */
  public static final class Verified {
    public final Manifest.Artifact artifact;
    public final File program;
    public final File tokenizer;

    Verified(Manifest.Artifact artifact, File program, File tokenizer) {
      this.artifact = artifact;
      this.program = program;
      this.tokenizer = tokenizer;
    }
  }

  /** Progress of hashing, for a UI (bytes done of bytes total over every file checked). */
  public interface Progress {
    void update(long done, long total);
  }

  private ModelDirectory(File dir, Manifest manifest) {
    this.dir = dir;
    this.manifest = manifest;
  }

  public static ModelDirectory open(File dir) throws ManifestException {
    if (!dir.isDirectory()) {
      throw new ManifestException(dir + ": no such directory; push the export with "
          + "`adb push exports/<run>-android-arm64 " + dir + "` (see android_demo/README.md)");
    }
    File file = new File(dir, MANIFEST);
    if (!file.isFile()) {
      throw new ManifestException(file + ": missing; is " + dir + " an export directory (python -m vlsi_edge.export)?");
    }
    String text;
    try {
      text = new String(Files.readAllBytes(file.toPath()), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new ManifestException(file + ": cannot read it (" + e.getMessage() + ")");
    }
    Manifest manifest = Manifest.parse(text, file.getPath());
    if (manifest.appArtifacts().isEmpty()) {
      throw new ManifestException(file + ": no ExecuTorch program the stock runner can run (family "
          + manifest.family + "); export with --target android-arm64");
    }
    if (!manifest.image.resize.equals(ImagePreprocessor.LONGEST_EDGE_THEN_SQUARE)
        || !manifest.image.resample.equals("bilinear")) {
      throw new ManifestException(file + ": image.resize " + manifest.image.resize + " / image.resample "
          + manifest.image.resample + " is not supported by this app (it implements "
          + ImagePreprocessor.LONGEST_EDGE_THEN_SQUARE + " / bilinear, the SmolVLM / Idefics3 processor)");
    }
    return new ModelDirectory(dir, manifest);
  }

  /** The named artifact (null: the smallest the app can run), after checking its files and the tokenizer. */
  public Verified verify(String artifactName, Progress progress) throws ManifestException {
    Manifest.Artifact artifact = null;
    for (Manifest.Artifact a : manifest.appArtifacts()) {
      if (artifactName == null || a.name.equals(artifactName)) {
        artifact = a;
        break;
      }
    }
    if (artifact == null) {
      StringBuilder names = new StringBuilder();
      for (Manifest.Artifact a : manifest.appArtifacts()) {
        names.append(names.length() == 0 ? "" : ", ").append(a.name);
      }
      throw new ManifestException(new File(dir, MANIFEST) + ": no app-runnable artifact " + artifactName
          + " (available: " + names + ")");
    }
    Manifest.FileEntry program = artifact.files.get("program");
    if (program == null) {
      throw new ManifestException(new File(dir, MANIFEST) + ": artifacts." + artifact.name + ".files.program missing");
    }
    long total = program.bytes + manifest.tokenizer.bytes;
    File tokenizer = check(manifest.tokenizer, 0, total, progress);
    File pte = check(program, manifest.tokenizer.bytes, total, progress);
    return new Verified(artifact, pte, tokenizer);
  }

  private File check(Manifest.FileEntry entry, long offset, long total, Progress progress) throws ManifestException {
    File file = new File(dir, entry.path);
    if (!file.isFile()) {
      throw new ManifestException(file + ": listed in " + MANIFEST + " but missing; push the whole export directory");
    }
    if (file.length() != entry.bytes) {
      throw new ManifestException(file + ": " + file.length() + " bytes, but " + MANIFEST + " says " + entry.bytes
          + " (truncated or replaced?)");
    }
    String actual;
    try {
      actual = sha256(file, offset, total, progress);
    } catch (IOException e) {
      throw new ManifestException(file + ": cannot read it (" + e.getMessage() + ")");
    }
    if (!actual.equals(entry.sha256)) {
      throw new ManifestException(file + ": sha256 " + actual + " does not match " + MANIFEST + " (" + entry.sha256
          + "); the file is corrupt or from another export");
    }
    return file;
  }

  static String sha256(File file, long offset, long total, Progress progress) throws IOException {
    MessageDigest digest;
    try {
      digest = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e); // every Java and Android runtime has SHA-256
    }
    byte[] buffer = new byte[1 << 20];
    long done = 0;
    try (InputStream in = new FileInputStream(file)) {
      for (int n; (n = in.read(buffer)) > 0; ) {
        digest.update(buffer, 0, n);
        done += n;
        if (progress != null) {
          progress.update(offset + done, total);
        }
      }
    }
    StringBuilder hex = new StringBuilder();
    for (byte b : digest.digest()) {
      hex.append(String.format("%02x", b));
    }
    return hex.toString();
  }
}
