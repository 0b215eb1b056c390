package org.vlsiedge.demo.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parts of an export's {@code manifest.json} the app uses (written by {@code python -m
 * vlsi_edge.export}; the contract is docs/EXPORT.md). Every missing or mistyped key fails with its
 * path, e.g. {@code manifest.json: image.mean: expected an array of 3 numbers}.
 */
public final class Manifest {
  /** The manifest format this app reads; the exporter writes it as {@code format_version}. */
  public static final int FORMAT_VERSION = 2;

  public final String source;
  public final String family;
  public final ImageSpec image;
  public final PromptSpec prompt;
  public final List<Integer> eosIds;
  public final List<String> eosTexts;
  public final int maxContextLen;
  public final int maxSeqLen;
  public final FileEntry tokenizer;
  /** Artifacts by name ("executorch-8da4w", "onnx-int8", ...), in manifest order. */
  public final Map<String, Artifact> artifacts;

  /** How the vision program wants its pixels. */
  public static final class ImageSpec {
    public final int size;
    public final String resize;
    public final String resample;
    public final double rescaleFactor;
    public final float[] mean;
    public final float[] std;

    ImageSpec(int size, String resize, String resample, double rescaleFactor, float[] mean, float[] std) {
      this.size = size;
      this.resize = resize;
      this.resample = resample;
      this.rescaleFactor = rescaleFactor;
      this.mean = mean;
      this.std = std;
    }
  }

  /** The chat prompt around the image and the question, as text the runner tokenizes. */
  public static final class PromptSpec {
    public final String beforeImageText;
    public final String afterImageText;
    public final String afterQuestionText;
    public final int numBos;

    PromptSpec(String beforeImageText, String afterImageText, String afterQuestionText, int numBos) {
      this.beforeImageText = beforeImageText;
      this.afterImageText = afterImageText;
      this.afterQuestionText = afterQuestionText;
      this.numBos = numBos;
    }
  }

  /** A file of the export, with the size and sha256 it must have. */
  public static final class FileEntry {
    public final String path;
    public final String sha256;
    public final long bytes;

    FileEntry(String path, String sha256, long bytes) {
      this.path = path;
      this.sha256 = sha256;
      this.bytes = bytes;
    }
  }

  /** One program: its runtime, scheme and files. */
  public static final class Artifact {
    public final String name;
    public final String runtime;
    public final String scheme;
    public final boolean stockRunner;
    public final Map<String, FileEntry> files;

    Artifact(String name, String runtime, String scheme, boolean stockRunner, Map<String, FileEntry> files) {
      this.name = name;
      this.runtime = runtime;
      this.scheme = scheme;
      this.stockRunner = stockRunner;
      this.files = files;
    }
  }

  private Manifest(String source, JsonObject root) throws ManifestException {
    this.source = source;
    int version = integer(root, "format_version");
    if (version != FORMAT_VERSION) {
      throw new ManifestException(source + ": format_version " + version + " is not " + FORMAT_VERSION
          + " (the version this app reads); re-export the model with the matching vlsi_edge, or update the app");
    }
    family = string(root, "family");
    JsonObject img = object(root, "image");
    image = new ImageSpec(integer(img, "image.size"), string(img, "image.resize"), string(img, "image.resample"),
        number(img, "image.rescale_factor"), floats(img, "image.mean", 3), floats(img, "image.std", 3));
    if (image.size < 1) {
      throw new ManifestException(source + ": image.size: " + image.size + " must be >= 1");
    }
    JsonObject p = object(root, "prompt");
    prompt = new PromptSpec(string(p, "prompt.before_image_text"), string(p, "prompt.after_image_text"),
        string(p, "prompt.after_question_text"), integer(p, "prompt.num_bos"));
    JsonObject tokens = object(root, "tokens");
    eosIds = integers(tokens, "tokens.eos_ids");
    eosTexts = strings(tokens, "tokens.eos_texts");
    maxContextLen = integer(root, "max_context_len");
    maxSeqLen = integer(root, "max_seq_len");
    tokenizer = fileEntry(object(root, "tokenizer"), "tokenizer");
    Map<String, Artifact> found = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : object(root, "artifacts").entrySet()) {
      String key = "artifacts." + e.getKey();
      if (!e.getValue().isJsonObject()) {
        throw new ManifestException(source + ": " + key + ": expected an object");
      }
      JsonObject a = e.getValue().getAsJsonObject();
      Map<String, FileEntry> files = new LinkedHashMap<>();
      for (Map.Entry<String, JsonElement> f : object(a, key + ".files").entrySet()) {
        if (!f.getValue().isJsonObject()) {
          throw new ManifestException(source + ": " + key + ".files." + f.getKey() + ": expected an object");
        }
        files.put(f.getKey(), fileEntry(f.getValue().getAsJsonObject(), key + ".files." + f.getKey()));
      }
      boolean stock = a.has("stock_runner") && a.get("stock_runner").isJsonPrimitive()
          && a.get("stock_runner").getAsBoolean();
      found.put(e.getKey(), new Artifact(e.getKey(), string(a, key + ".runtime"), string(a, key + ".scheme"), stock,
          Collections.unmodifiableMap(files)));
    }
    artifacts = Collections.unmodifiableMap(found);
  }

  /** Parse manifest text; {@code source} names the file in every error. */
  public static Manifest parse(String json, String source) throws ManifestException {
    JsonElement root;
    try {
      root = JsonParser.parseString(json);
    } catch (JsonParseException e) {
      throw new ManifestException(source + ": not valid JSON (" + e.getMessage() + "); re-copy the model directory");
    }
    if (!root.isJsonObject()) {
      throw new ManifestException(source + ": expected a JSON object at the top level");
    }
    return new Manifest(source, root.getAsJsonObject());
  }

  /** The ExecuTorch programs the stock runner (Android's LlmModule) can run, smallest scheme first. */
  public List<Artifact> appArtifacts() {
    List<Artifact> out = new ArrayList<>();
    for (String scheme : new String[] {"8da4w", "8da8w", "fp32"}) {
      for (Artifact a : artifacts.values()) {
        if (a.runtime.equals("executorch") && a.stockRunner && a.scheme.equals(scheme)) {
          out.add(a);
        }
      }
    }
    return out;
  }

  // ---- typed access, errors name the key ----------------------------------------------------------

  private static String leaf(String path) {
    int dot = path.lastIndexOf('.');
    return dot < 0 ? path : path.substring(dot + 1);
  }

  private JsonElement get(JsonObject o, String path) throws ManifestException {
    JsonElement e = o.get(leaf(path));
    if (e == null || e.isJsonNull()) {
      throw new ManifestException(source + ": missing key " + path);
    }
    return e;
  }

  private JsonObject object(JsonObject o, String path) throws ManifestException {
    JsonElement e = get(o, path);
    if (!e.isJsonObject()) {
      throw new ManifestException(source + ": " + path + ": expected an object, got " + e);
    }
    return e.getAsJsonObject();
  }

  private String string(JsonObject o, String path) throws ManifestException {
    JsonElement e = get(o, path);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
      throw new ManifestException(source + ": " + path + ": expected a string, got " + e);
    }
    return e.getAsString();
  }

  private double number(JsonObject o, String path) throws ManifestException {
    JsonElement e = get(o, path);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
      throw new ManifestException(source + ": " + path + ": expected a number, got " + e);
    }
    return e.getAsDouble();
  }

  private int integer(JsonObject o, String path) throws ManifestException {
    double v = number(o, path);
    if (v != Math.rint(v) || Math.abs(v) > Integer.MAX_VALUE) {
      throw new ManifestException(source + ": " + path + ": expected an integer, got " + v);
    }
    return (int) v;
  }

  private JsonArray array(JsonObject o, String path) throws ManifestException {
    JsonElement e = get(o, path);
    if (!e.isJsonArray()) {
      throw new ManifestException(source + ": " + path + ": expected an array, got " + e);
    }
    return e.getAsJsonArray();
  }

  private float[] floats(JsonObject o, String path, int n) throws ManifestException {
    JsonArray a = array(o, path);
    if (a.size() != n) {
      throw new ManifestException(source + ": " + path + ": expected " + n + " numbers, got " + a);
    }
    float[] out = new float[n];
    for (int i = 0; i < n; i++) {
      JsonElement e = a.get(i);
      if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
        throw new ManifestException(source + ": " + path + "[" + i + "]: expected a number, got " + e);
      }
      out[i] = (float) e.getAsDouble(); // as numpy: np.array(mean, dtype=float32)
    }
    return out;
  }

  private List<Integer> integers(JsonObject o, String path) throws ManifestException {
    List<Integer> out = new ArrayList<>();
    for (JsonElement e : array(o, path)) {
      if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
        throw new ManifestException(source + ": " + path + ": expected integers, got " + e);
      }
      out.add(e.getAsInt());
    }
    return Collections.unmodifiableList(out);
  }

  private List<String> strings(JsonObject o, String path) throws ManifestException {
    List<String> out = new ArrayList<>();
    for (JsonElement e : array(o, path)) {
      if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
        throw new ManifestException(source + ": " + path + ": expected strings, got " + e);
      }
      out.add(e.getAsString());
    }
    return Collections.unmodifiableList(out);
  }

  private FileEntry fileEntry(JsonObject o, String path) throws ManifestException {
    String file = string(o, path + ".path");
    if (file.startsWith("/") || file.contains("..")) {
      throw new ManifestException(source + ": " + path + ".path: " + file + " must stay inside the model directory");
    }
    String sha = string(o, path + ".sha256");
    if (!sha.matches("[0-9a-f]{64}")) {
      throw new ManifestException(source + ": " + path + ".sha256: " + sha + " is not a sha256 hex digest");
    }
    double bytes = number(o, path + ".bytes");
    if (bytes < 0 || bytes != Math.rint(bytes)) {
      throw new ManifestException(source + ": " + path + ".bytes: " + bytes + " is not a file size");
    }
    return new FileEntry(file, sha, (long) bytes);
  }
}
