package org.vlsiedge.demo.core;

/** A model directory the app cannot trust or use: the message names the file, key or value. */
public final class ManifestException extends Exception {
  private static final long serialVersionUID = 1L;

  public ManifestException(String message) {
    super(message);
  }
}
