package org.vlsiedge.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import org.junit.Test;

public class TokenStreamTest {
  private static final long MS = 1_000_000L;

  @Test
  public void stopsAtTheEndTokenAndNeverShowsIt() {
    TokenStream s = new TokenStream(Arrays.asList("<end_of_utterance>"), 100);
    assertFalse(s.accept(" two", 10 * MS));
    assertFalse(s.accept(" circles", 20 * MS));
    assertFalse(s.accept("<end_of", 30 * MS));
    assertEquals("two circles", s.text()); // a partial stop text is held back
    assertTrue(s.accept("_utterance>", 40 * MS));
    assertEquals("two circles", s.text());
    assertEquals("end of answer", s.stopReason());
    assertTrue(s.accept("ignored", 50 * MS)); // after stopping nothing more is taken
    assertEquals(4, s.tokens());
  }

  @Test
  public void stopsAtTheTokenLimit() {
    TokenStream s = new TokenStream(Arrays.asList("</s>"), 3);
    assertFalse(s.accept("a", 1));
    assertFalse(s.accept("b", 2));
    assertTrue(s.accept("c", 3));
    assertEquals("abc", s.text());
    assertTrue(s.stopReason().startsWith("token limit"));
  }

  @Test
  public void timings() {
    TokenStream s = new TokenStream(Arrays.asList("</s>"), 100);
    assertTrue(Double.isNaN(s.timeToFirstTokenMs()));
    s.markStart(100 * MS);
    s.markImage(105 * MS, 125 * MS);
    s.accept("a", 150 * MS);
    assertTrue(Double.isNaN(s.decodeTokensPerSecond()));
    s.accept("b", 250 * MS);
    s.accept("c", 350 * MS);
    assertEquals(20.0, s.imageEncodeMs(), 1e-9);
    assertEquals(50.0, s.timeToFirstTokenMs(), 1e-9);
    assertEquals(10.0, s.decodeTokensPerSecond(), 1e-9); // 2 tokens in 0.2 s
    assertTrue(s.summary(), s.summary().contains("10.0 tok/s"));
  }
}
