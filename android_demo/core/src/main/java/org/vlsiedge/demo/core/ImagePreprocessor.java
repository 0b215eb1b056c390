package org.vlsiedge.demo.core;

/**
 * Pixels in, the vision program's input out: exactly what the exporter's processor produces (the
 * golden tests compare bit for bit), so the app shows the model the image validation showed it.
 *
 * <p>SmolVLM / Idefics3 ({@code image.resize = longest_edge_then_square}): resize so the longest
 * edge is {@code size} keeping the aspect ratio (the short edge rounded up to even), then to {@code
 * size x size}; both with Pillow's bilinear filter on 8-bit RGB (re-implemented here: its
 * fixed-point, antialiased two-pass resampler). Then {@code float32(x * rescale_factor)}, {@code (x
 * - mean) / std} per channel in float32, laid out CHW — the order and precision of transformers'
 * {@code rescale} and {@code normalize}.
 */
public final class ImagePreprocessor {
  public static final String LONGEST_EDGE_THEN_SQUARE = "longest_edge_then_square";
  private static final int MAX_IMAGE_SIZE = 4096; // Idefics3's absolute cap on the first resize

  private final Manifest.ImageSpec spec;

  public ImagePreprocessor(Manifest.ImageSpec spec) {
    if (!spec.resize.equals(LONGEST_EDGE_THEN_SQUARE) || !spec.resample.equals("bilinear")) {
      throw new IllegalArgumentException("image.resize " + spec.resize + " / " + spec.resample + " is not supported");
    }
    this.spec = spec;
  }

  /** An 8-bit RGB image: {@code rgb[(y * width + x) * 3 + c]}, values 0..255. */
  public static final class RgbImage {
    public final int width;
    public final int height;
    public final byte[] rgb;

    public RgbImage(int width, int height, byte[] rgb) {
      if (width < 1 || height < 1 || rgb.length != width * height * 3) {
        throw new IllegalArgumentException("image " + width + "x" + height + " needs " + width * height * 3
            + " RGB bytes, got " + rgb.length);
      }
      this.width = width;
      this.height = height;
      this.rgb = rgb;
    }

    /**
     * From packed, unpremultiplied ARGB ints (Android's Bitmap.getPixels, Java's BufferedImage.getRGB).
     * Transparent pixels are composited onto white, as the processors' convert_to_rgb does.
     */
    public static RgbImage fromArgb(int width, int height, int[] argb) {
      byte[] rgb = new byte[width * height * 3];
      for (int i = 0; i < width * height; i++) {
        int alpha = argb[i] >>> 24;
        rgb[i * 3] = (byte) onWhite((argb[i] >> 16) & 0xff, alpha);
        rgb[i * 3 + 1] = (byte) onWhite((argb[i] >> 8) & 0xff, alpha);
        rgb[i * 3 + 2] = (byte) onWhite(argb[i] & 0xff, alpha);
      }
      return new RgbImage(width, height, rgb);
    }

    /** One channel over opaque white, in PIL's alpha_composite integer arithmetic (equal for all 65,536 inputs). */
    static int onWhite(int channel, int alpha) {
      int scaled = (channel * alpha + 255 * (255 - alpha)) * 128 + (0x80 << 7);
      return (((scaled >> 8) + scaled) >> 8) >> 7;
    }
  }

  /** The size after the first, aspect-keeping resize: {height, width} (transformers' Idefics3 rounding). */
  static int[] longestEdgeSize(int height, int width, int maxLen) {
    double aspect = (double) width / height;
    if (width >= height) {
      width = maxLen;
      height = (int) (width / aspect);
      if (height % 2 != 0) {
        height += 1;
      }
    } else {
      height = maxLen;
      width = (int) (height * aspect);
      if (width % 2 != 0) {
        width += 1;
      }
    }
    height = Math.max(height, 1);
    width = Math.max(width, 1);
    aspect = (double) width / height;
    if (width >= height && width > MAX_IMAGE_SIZE) {
      width = MAX_IMAGE_SIZE;
      height = (int) (width / aspect);
    } else if (height > width && height > MAX_IMAGE_SIZE) {
      height = MAX_IMAGE_SIZE;
      width = (int) (height * aspect);
    }
    return new int[] {Math.max(height, 1), Math.max(width, 1)};
  }

  /** The program's pixel input: float32, [3, size, size] flattened CHW. */
  public float[] preprocess(RgbImage image) {
    int[] first = longestEdgeSize(image.height, image.width, spec.size);
    RgbImage resized = resizeBilinear(resizeBilinear(image, first[1], first[0]), spec.size, spec.size);
    int plane = spec.size * spec.size;
    float[] out = new float[3 * plane];
    for (int c = 0; c < 3; c++) {
      for (int i = 0; i < plane; i++) {
        int value = resized.rgb[i * 3 + c] & 0xff;
        float rescaled = (float) (value * spec.rescaleFactor); // float64 multiply, then float32
        out[c * plane + i] = (rescaled - spec.mean[c]) / spec.std[c];
      }
    }
    return out;
  }

  // ---- Pillow's Image.resize(size, BILINEAR) on 8-bit RGB (libImaging/Resample.c) ------------------

  private static final int PRECISION_BITS = 32 - 8 - 2;

  /** Resampling weights of one pass: per output pixel, the first input index, count and 8.22 fixed-point weights. */
  private static final class Coefficients {
    final int[] start;
    final int[] count;
    final int[][] weights;

    Coefficients(int inSize, int outSize) {
      double scale = (double) inSize / outSize;
      double filterScale = Math.max(scale, 1.0); // antialias when shrinking
      double support = 1.0 * filterScale; // the bilinear (triangle) filter's support is 1
      double invFilterScale = 1.0 / filterScale;
      start = new int[outSize];
      count = new int[outSize];
      weights = new int[outSize][];
      for (int xx = 0; xx < outSize; xx++) {
        double center = (xx + 0.5) * scale;
        int xmin = Math.max((int) (center - support + 0.5), 0);
        int xmax = Math.min((int) (center + support + 0.5), inSize) - xmin;
        double[] k = new double[Math.max(xmax, 0)];
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
          double w = triangle((x + xmin - center + 0.5) * invFilterScale);
          k[x] = w;
          ww += w;
        }
        int[] fixed = new int[k.length];
        for (int x = 0; x < k.length; x++) {
          double w = ww != 0.0 ? k[x] / ww : k[x];
          fixed[x] = w < 0 ? (int) (-0.5 + w * (1 << PRECISION_BITS)) : (int) (0.5 + w * (1 << PRECISION_BITS));
        }
        start[xx] = xmin;
        count[xx] = k.length;
        weights[xx] = fixed;
      }
    }
  }

  private static double triangle(double x) {
    x = Math.abs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
  }

  private static int clip8(int v) {
    return Math.min(Math.max(v >> PRECISION_BITS, 0), 255);
  }

  /** Pillow's resize: a horizontal pass if the width changes, then a vertical one if the height does. */
  static RgbImage resizeBilinear(RgbImage in, int width, int height) {
    RgbImage image = in;
    if (width != image.width) {
      Coefficients k = new Coefficients(image.width, width);
      byte[] out = new byte[width * image.height * 3];
      for (int y = 0; y < image.height; y++) {
        for (int xx = 0; xx < width; xx++) {
          for (int c = 0; c < 3; c++) {
            int ss = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < k.count[xx]; x++) {
              ss += (image.rgb[(y * image.width + k.start[xx] + x) * 3 + c] & 0xff) * k.weights[xx][x];
            }
            out[(y * width + xx) * 3 + c] = (byte) clip8(ss);
          }
        }
      }
      image = new RgbImage(width, image.height, out);
    }
    if (height != image.height) {
      Coefficients k = new Coefficients(image.height, height);
      byte[] out = new byte[width * height * 3];
      for (int yy = 0; yy < height; yy++) {
        for (int x = 0; x < width; x++) {
          for (int c = 0; c < 3; c++) {
            int ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < k.count[yy]; y++) {
              ss += (image.rgb[((k.start[yy] + y) * width + x) * 3 + c] & 0xff) * k.weights[yy][y];
            }
            out[(yy * width + x) * 3 + c] = (byte) clip8(ss);
          }
        }
      }
      image = new RgbImage(width, height, out);
    }
    return image;
  }
}
