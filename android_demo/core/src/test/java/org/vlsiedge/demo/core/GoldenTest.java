package org.vlsiedge.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import org.junit.Test;

/**
 * The app's preprocessing and prompt against the golden files the Python exporter wrote into an
 * export directory ({@code app_golden/}): pixels equal bit for bit, prompt text exactly. The export
 * directory comes from the system property {@code vlsi_edge.export} (tests/test_android_demo.py
 * exports the shipped student in the same run and passes it).
 */
public class GoldenTest {
  static File exportDir() {
    String dir = System.getProperty("vlsi_edge.export");
    if (dir == null || dir.isEmpty()) {
      fail("set -Dvlsi_edge.export=EXPORT_DIR (run_tests.sh EXPORT_DIR, or gradle -PvlsiEdgeExport=EXPORT_DIR): "
          + "an export with app_golden/, from python -m vlsi_edge.export");
    }
    return new File(dir);
  }

  private static JsonObject golden(File export) throws IOException {
    File index = new File(export, "app_golden/golden.json");
    return JsonParser.parseString(new String(Files.readAllBytes(index.toPath()), StandardCharsets.UTF_8))
        .getAsJsonObject();
  }

  @Test
  public void pixelsEqualTheExportersBitForBit() throws Exception {
    File export = exportDir();
    ModelDirectory model = ModelDirectory.open(export);
    ImagePreprocessor preprocessor = new ImagePreprocessor(model.manifest.image);
    int checked = 0;
    boolean resized = false;
    for (JsonElement e : golden(export).getAsJsonArray("items")) {
      JsonObject item = e.getAsJsonObject();
      File dir = new File(export, "app_golden");
      ImagePreprocessor.RgbImage image = HostCli.readRgb(new File(dir, item.get("image").getAsString()));
      assertEquals(item.get("width").getAsInt(), image.width);
      resized |= image.width != model.manifest.image.size || image.height != model.manifest.image.size;
      float[] ours = preprocessor.preprocess(image);
      byte[] raw = Files.readAllBytes(new File(dir, item.get("pixels").getAsString()).toPath());
      float[] theirs = new float[raw.length / 4];
      ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(theirs);
      assertEquals(item.get("name").getAsString() + ": pixel count", theirs.length, ours.length);
      int mismatches = 0;
      int first = -1;
      for (int i = 0; i < ours.length; i++) {
        if (Float.floatToRawIntBits(ours[i]) != Float.floatToRawIntBits(theirs[i])) {
          mismatches++;
          first = first < 0 ? i : first;
        }
      }
      assertEquals(item.get("name").getAsString() + ": " + mismatches + " pixels differ, first at " + first
          + (first >= 0 ? " (ours " + ours[first] + ", exporter's " + theirs[first] + ")" : ""), 0, mismatches);
      checked++;
    }
    assertTrue("golden.json has items", checked >= 3);
    assertTrue("the golden set includes images the app must resize", resized);
  }

  @Test
  public void promptEqualsTheExportersText() throws Exception {
    File export = exportDir();
    Manifest manifest = ModelDirectory.open(export).manifest;
    for (JsonElement e : golden(export).getAsJsonArray("items")) {
      JsonObject item = e.getAsJsonObject();
      Prompt prompt = Prompt.forQuestion(manifest.prompt, item.get("question").getAsString());
      assertEquals(item.get("prefill_text").getAsString(), prompt.prefillText);
      assertEquals(item.get("generate_text").getAsString(), prompt.generateText);
      assertEquals(item.get("num_bos").getAsInt(), prompt.numBos);
    }
  }
}
