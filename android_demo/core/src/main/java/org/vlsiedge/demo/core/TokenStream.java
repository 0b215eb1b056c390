package org.vlsiedge.demo.core;

import java.util.List;

/**
 * The answer as it streams in from {@code LlmCallback.onResult}: text pieces are appended until the
 * end-of-answer token's text arrives (the runner streams it too) or the token budget is spent; what
 * is shown never contains the stop text, even when it arrives split across pieces. Also keeps the
 * timings the app shows: image encode, time to first token, decode tokens/s.
 */
public final class TokenStream {
  private final List<String> stopTexts;
  private final int maxTokens;
  private final StringBuilder raw = new StringBuilder();
  private int tokens;
  private boolean stopped;
  private String stopReason = "";

  private long startNanos = -1;
  private long imageStartNanos = -1;
  private long imageEndNanos = -1;
  private long firstTokenNanos = -1;
  private long lastTokenNanos = -1;

  public TokenStream(List<String> stopTexts, int maxTokens) {
    this.stopTexts = stopTexts;
    this.maxTokens = maxTokens;
  }

  /** Clock marks, in System.nanoTime() units: the prompt starts, the image goes in, the image is in. */
  public void markStart(long nanos) {
    startNanos = nanos;
  }

  public void markImage(long startNanos, long endNanos) {
    imageStartNanos = startNanos;
    imageEndNanos = endNanos;
  }

  /** One streamed piece; returns true when generation should stop (the app then calls LlmModule.stop()). */
  public boolean accept(String piece, long nanos) {
    if (stopped) {
      return true;
    }
    if (firstTokenNanos < 0) {
      firstTokenNanos = nanos;
    }
    lastTokenNanos = nanos;
    tokens++;
    raw.append(piece);
    for (String stop : stopTexts) {
      if (!stop.isEmpty() && raw.indexOf(stop) >= 0) {
        stopped = true;
        stopReason = "end of answer";
        return true;
      }
    }
    if (tokens >= maxTokens) {
      stopped = true;
      stopReason = "token limit (" + maxTokens + ")";
    }
    return stopped;
  }

  /** The answer so far, without the stop text or any prefix of it that may still be arriving. */
  public String text() {
    String s = raw.toString();
    int cut = s.length();
    for (String stop : stopTexts) {
      if (stop.isEmpty()) {
        continue;
      }
      int at = s.indexOf(stop);
      if (at >= 0) {
        cut = Math.min(cut, at);
        continue;
      }
      if (!stopped) { // hold back a partial stop text at the end
        for (int n = Math.min(stop.length() - 1, s.length()); n > 0; n--) {
          if (s.endsWith(stop.substring(0, n))) {
            cut = Math.min(cut, s.length() - n);
            break;
          }
        }
      }
    }
    return s.substring(0, cut).trim();
  }

  public boolean stopped() {
    return stopped;
  }

  public String stopReason() {
    return stopReason;
  }

  public int tokens() {
    return tokens;
  }

  /** Milliseconds the image took to go in (vision encoder and its prefill); NaN before it did. */
  public double imageEncodeMs() {
    return imageEndNanos < 0 ? Double.NaN : (imageEndNanos - imageStartNanos) / 1e6;
  }

  /** Milliseconds from the start of the prompt to the first answer token; NaN before it arrived. */
  public double timeToFirstTokenMs() {
    return firstTokenNanos < 0 || startNanos < 0 ? Double.NaN : (firstTokenNanos - startNanos) / 1e6;
  }

  /** Tokens after the first, per second of decoding; NaN with fewer than two tokens. */
  public double decodeTokensPerSecond() {
    return tokens < 2 ? Double.NaN : (tokens - 1) / ((lastTokenNanos - firstTokenNanos) / 1e9);
  }

  /** One line for the UI: "encode 12 ms · first token 80 ms · 25.3 tok/s". */
  public String summary() {
    return String.format(java.util.Locale.ROOT, "encode %.0f ms · first token %.0f ms · %.1f tok/s (%d tokens%s)",
        imageEncodeMs(), timeToFirstTokenMs(), decodeTokensPerSecond(), tokens,
        stopReason.isEmpty() ? "" : ", " + stopReason);
  }
}
