package org.vlsiedge.demo.core;

/**
 * The chat prompt for one question, as the app hands it to ExecuTorch's {@code LlmModule}: text
 * before the image ({@code prefillPrompt}), the image ({@code prefillImages}), then the rest ({@code
 * generate}). The runner tokenizes the text with {@code tokenizer.json}; the exporter checked that
 * each segment tokenizes back to exactly the ids validation used.
 */
public final class Prompt {
  public final String prefillText;
  public final String generateText;
  public final int numBos;

  private Prompt(String prefillText, String generateText, int numBos) {
    this.prefillText = prefillText;
    this.generateText = generateText;
    this.numBos = numBos;
  }

  public static Prompt forQuestion(Manifest.PromptSpec spec, String question) {
    if (question == null || question.trim().isEmpty()) {
      throw new IllegalArgumentException("type a question about the image first");
    }
    return new Prompt(spec.beforeImageText, spec.afterImageText + question + spec.afterQuestionText, spec.numBos);
  }
}
