package org.vlsiedge.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Random;
import org.junit.Test;

/** Invariants of the resampler; exactness against Pillow is GoldenTest's job. */
public class ImagePreprocessorTest {
  private static ImagePreprocessor.RgbImage random(int w, int h, long seed) {
    byte[] rgb = new byte[w * h * 3];
    new Random(seed).nextBytes(rgb);
    return new ImagePreprocessor.RgbImage(w, h, rgb);
  }

  @Test
  public void resizingToTheSameSizeIsTheIdentity() {
    ImagePreprocessor.RgbImage image = random(37, 23, 1);
    assertArrayEquals(image.rgb, ImagePreprocessor.resizeBilinear(image, 37, 23).rgb);
  }

  @Test
  public void aFlatImageStaysFlatAtAnySize() {
    byte[] rgb = new byte[50 * 30 * 3];
    for (int i = 0; i < rgb.length; i += 3) {
      rgb[i] = (byte) 200;
      rgb[i + 1] = 7;
      rgb[i + 2] = (byte) 128;
    }
    ImagePreprocessor.RgbImage flat = new ImagePreprocessor.RgbImage(50, 30, rgb);
    for (int[] size : new int[][] {{13, 9}, {96, 96}, {50, 71}}) {
      ImagePreprocessor.RgbImage out = ImagePreprocessor.resizeBilinear(flat, size[0], size[1]);
      for (int i = 0; i < out.rgb.length; i += 3) {
        assertEquals(200, out.rgb[i] & 0xff);
        assertEquals(7, out.rgb[i + 1] & 0xff);
        assertEquals(128, out.rgb[i + 2] & 0xff);
      }
    }
  }

  @Test
  public void firstResizeKeepsTheAspectWithAnEvenShortEdge() {
    assertArrayEquals(new int[] {72, 96}, ImagePreprocessor.longestEdgeSize(112, 150, 96)); // int(96/1.339)=71 -> 72
    assertArrayEquals(new int[] {96, 60}, ImagePreprocessor.longestEdgeSize(130, 80, 96)); // int(96*0.615)=59 -> 60
    assertArrayEquals(new int[] {96, 96}, ImagePreprocessor.longestEdgeSize(40, 40, 96));
  }

  @Test
  public void argbCompositesTransparencyOntoWhiteAsPilDoes() {
    // PIL: alpha_composite(white, (255, 64, 16, 128)) -> (255, 159, 135); alpha 0 -> white; opaque -> itself
    ImagePreprocessor.RgbImage image =
        ImagePreprocessor.RgbImage.fromArgb(3, 1, new int[] {0x80FF4010, 0x000A141E, 0xFFFF4010});
    assertArrayEquals(
        new byte[] {(byte) 255, (byte) 159, (byte) 135, (byte) 255, (byte) 255, (byte) 255, (byte) 0xFF, 0x40, 0x10},
        image.rgb);
  }
}
