@file:Suppress("UNUSED_PARAMETER", "unused")
package org.pytorch.executorch.extension.llm
interface LlmCallback {
    fun onResult(result: String)
    fun onStats(stats: String) {}
    fun onError(errorCode: Int, message: String) {}
}
class LlmModule {
    constructor(modelType: Int, modulePath: String, tokenizerPath: String, temperature: Float, dataFiles: List<String>, numBos: Int, numEos: Int)
    constructor(modelType: Int, modulePath: String, tokenizerPath: String, temperature: Float, dataPath: String?, numBos: Int, numEos: Int)
    fun load() {}
    fun close() {}
    fun stop() {}
    fun resetContext() {}
    fun prefillPrompt(prompt: String) {}
    fun prefillImages(image: IntArray, width: Int, height: Int, channels: Int) {}
    fun prefillImages(image: FloatArray, width: Int, height: Int, channels: Int) {}
    fun generate(prompt: String, seqLen: Int, llmCallback: LlmCallback, echo: Boolean) {}
    fun generate(prompt: String, llmCallback: LlmCallback) {}
    companion object { const val MODEL_TYPE_TEXT = 1; const val MODEL_TYPE_MULTIMODAL = 2 }
}
