package org.vlsiedge.demo.core;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.awt.color.ColorSpace;
import java.awt.image.BufferedImage;
import java.awt.image.Raster;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import javax.imageio.ImageIO;

/**
 * The app's steps before the runtime, on a laptop: check the model directory, preprocess an image
 * and build the prompt with the same code the app runs. {@code python -m vlsi_edge.app} calls it,
 * then runs the same ExecuTorch runner the app's {@code LlmModule} wraps.
 *
 * <pre>
 * java -cp CLASSPATH org.vlsiedge.demo.core.HostCli prepare MODEL_DIR IMAGE QUESTION OUT_DIR [ARTIFACT]
 *   writes OUT_DIR/pixels.f32 (float32 little-endian CHW) and OUT_DIR/app.json; exit 2 on a bad model
 *   directory, image or question, with the file or key named
 * </pre>
 */
public final class HostCli {
  private HostCli() {}

  public static void main(String[] args) {
    if (args.length < 5 || !args[0].equals("prepare")) {
      System.err.println("usage: HostCli prepare MODEL_DIR IMAGE QUESTION OUT_DIR [ARTIFACT]");
      System.exit(2);
    }
    try {
      prepare(new File(args[1]), new File(args[2]), args[3], new File(args[4]), args.length > 5 ? args[5] : null);
    } catch (ManifestException | IllegalArgumentException | IOException e) {
      System.err.println("error: " + e.getMessage());
      System.exit(2);
    }
  }

  static void prepare(File modelDir, File imageFile, String question, File out, String artifact)
      throws ManifestException, IOException {
    ModelDirectory model = ModelDirectory.open(modelDir);
    ModelDirectory.Verified verified = model.verify(artifact, null);
    Prompt prompt = Prompt.forQuestion(model.manifest.prompt, question);
    float[] pixels = new ImagePreprocessor(model.manifest.image).preprocess(readRgb(imageFile));

    out.mkdirs();
    ByteBuffer bytes = ByteBuffer.allocate(pixels.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    bytes.asFloatBuffer().put(pixels);
    write(new File(out, "pixels.f32"), bytes.array());
    JsonObject app = new JsonObject();
    app.addProperty("artifact", verified.artifact.name);
    app.addProperty("program", verified.program.getAbsolutePath());
    app.addProperty("tokenizer", verified.tokenizer.getAbsolutePath());
    app.addProperty("prefill_text", prompt.prefillText);
    app.addProperty("generate_text", prompt.generateText);
    app.addProperty("num_bos", prompt.numBos);
    app.addProperty("size", model.manifest.image.size);
    app.addProperty("max_seq_len", model.manifest.maxSeqLen);
    JsonArray stops = new JsonArray();
    model.manifest.eosTexts.forEach(stops::add);
    app.add("eos_texts", stops);
    String json = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(app);
    write(new File(out, "app.json"), json.getBytes(StandardCharsets.UTF_8));
  }

  /**
   * 8-bit RGB from a PNG / JPEG file, as vlsi_edge.data.images reads it: gray replicated to RGB, 16-bit gray
   * scaled to 8 bits, transparency composited onto white. (EXIF orientation is not applied here.)
   */
  public static ImagePreprocessor.RgbImage readRgb(File file) throws IOException {
    if (!file.isFile()) {
      throw new IOException(file + ": no such image file");
    }
    BufferedImage image;
    try {
      image = ImageIO.read(file);
    } catch (IOException e) {
      throw new IOException(file + ": cannot read it (" + e.getMessage() + ")");
    }
    if (image == null) {
      throw new IOException(file + ": not an image ImageIO can read (PNG or JPEG)");
    }
    int w = image.getWidth();
    int h = image.getHeight();
    if (image.getColorModel().getColorSpace().getType() == ColorSpace.TYPE_GRAY) {
      return readGray(image.getRaster()); // getRGB would convert through a linear gray space
    }
    return ImagePreprocessor.RgbImage.fromArgb(w, h, image.getRGB(0, 0, w, h, null, 0, w));
  }

  /** Gray (8 or 16 bit), with or without alpha, from the raw samples: 16 bits scaled to 8, alpha onto white. */
  private static ImagePreprocessor.RgbImage readGray(Raster raster) {
    int w = raster.getWidth();
    int h = raster.getHeight();
    boolean alpha = raster.getNumBands() > 1;
    boolean sixteen = raster.getSampleModel().getSampleSize(0) == 16;
    byte[] rgb = new byte[w * h * 3];
    for (int y = 0; y < h; y++) {
      for (int x = 0; x < w; x++) {
        int gray = raster.getSample(x, y, 0);
        int a = alpha ? raster.getSample(x, y, 1) : (sixteen ? 65535 : 255);
        if (sixteen) {
          gray = (int) Math.round(gray / 257.0);
          a = (int) Math.round(a / 257.0);
        }
        int i = (y * w + x) * 3;
        rgb[i] = rgb[i + 1] = rgb[i + 2] = (byte) ImagePreprocessor.RgbImage.onWhite(gray, a);
      }
    }
    return new ImagePreprocessor.RgbImage(w, h, rgb);
  }

  private static void write(File file, byte[] data) throws IOException {
    File tmp = new File(file.getPath() + ".tmp");
    Files.write(tmp.toPath(), data);
    Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }
}
