package org.vlsiedge.demo

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ColorSpace
import android.net.Uri
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.ProgressBar
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.core.content.FileProvider
import java.io.File
import java.util.concurrent.Executors
import org.pytorch.executorch.extension.llm.LlmCallback
import org.pytorch.executorch.extension.llm.LlmModule
import org.vlsiedge.demo.core.ImagePreprocessor
import org.vlsiedge.demo.core.ManifestException
import org.vlsiedge.demo.core.ModelDirectory
import org.vlsiedge.demo.core.Prompt
import org.vlsiedge.demo.core.TokenStream

/**
 * Pick or take a photo, ask a question, watch the answer stream in.
 *
 * Everything that is not UI lives in the `core` module (tested on the JVM against the exporter's
 * golden files): [ModelDirectory] checks the pushed export against manifest.json, [ImagePreprocessor]
 * turns the bitmap into the vision program's pixels, [Prompt] builds the chat prompt, [TokenStream]
 * handles streaming, stopping and timings. This class only wires them to ExecuTorch's [LlmModule].
 */
class MainActivity : AppCompatActivity() {
    private val worker = Executors.newSingleThreadExecutor() // LlmModule is used from this thread only

    private lateinit var modelDir: EditText
    private lateinit var status: TextView
    private lateinit var progress: ProgressBar
    private lateinit var imageView: ImageView
    private lateinit var question: EditText
    private lateinit var ask: Button
    private lateinit var answer: TextView
    private lateinit var stats: TextView

    private var model: ModelDirectory? = null
    private var module: LlmModule? = null
    private var bitmap: Bitmap? = null
    @Volatile private var generating = false
    private var photoUri: Uri? = null

    private val pickImage = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        uri?.let { setImage(it) }
    }
    private val takePhoto = registerForActivityResult(ActivityResultContracts.TakePicture()) { saved ->
        if (saved) photoUri?.let { setImage(it) }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        modelDir = findViewById(R.id.modelDir)
        status = findViewById(R.id.status)
        progress = findViewById(R.id.progress)
        imageView = findViewById(R.id.image)
        question = findViewById(R.id.question)
        ask = findViewById(R.id.ask)
        answer = findViewById(R.id.answer)
        stats = findViewById(R.id.stats)

        // adb push exports/<run>-android-arm64/. /sdcard/Android/data/org.vlsiedge.demo/files/model/
        modelDir.setText(File(getExternalFilesDir(null), "model").path)
        findViewById<Button>(R.id.load).setOnClickListener { loadModel(File(modelDir.text.toString().trim())) }
        findViewById<Button>(R.id.pick).setOnClickListener {
            pickImage.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.photo).setOnClickListener {
            val file = File(cacheDir, "photos/photo.jpg").apply { parentFile?.mkdirs() }
            photoUri = FileProvider.getUriForFile(this, "$packageName.photos", file)
            takePhoto.launch(photoUri!!)
        }
        ask.setOnClickListener { if (generating) module?.stop() else askQuestion() }
    }

    override fun onDestroy() {
        module?.stop()
        worker.execute { module?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    /** Check the directory against its manifest (schema, sizes, sha256), then load the program. */
    private fun loadModel(dir: File) {
        ask.isEnabled = false
        progress.visibility = View.VISIBLE
        status.text = "Checking $dir …"
        worker.execute {
            try {
                val opened = ModelDirectory.open(dir)
                val verified = opened.verify(null) { done, total ->
                    runOnUiThread { progress.progress = (1000 * done / maxOf(total, 1L)).toInt() }
                }
                module?.close()
                val loaded = LlmModule(
                    LlmModule.MODEL_TYPE_MULTIMODAL,
                    verified.program.path,
                    verified.tokenizer.path,
                    0.0f, // greedy, as validation
                    null as String?,
                    opened.manifest.prompt.numBos,
                    0
                )
                loaded.load()
                module = loaded
                model = opened
                runOnUiThread {
                    status.text = "${verified.artifact.name} (${opened.manifest.family}, " +
                        "${verified.program.length() / 1_000_000} MB, image ${opened.manifest.image.size} px) ready"
                    ask.isEnabled = bitmap != null
                }
            } catch (e: ManifestException) {
                runOnUiThread { status.text = e.message ?: e.toString() }
            } catch (e: Exception) {
                runOnUiThread { status.text = "Loading failed: ${e.message}" }
            } finally {
                runOnUiThread { progress.visibility = View.GONE }
            }
        }
    }

    /** Decode to 8-bit sRGB ARGB (as PIL reads a file); preprocessing happens when a question is asked. */
    private fun setImage(uri: Uri) {
        val options = BitmapFactory.Options().apply {
            inPreferredConfig = Bitmap.Config.ARGB_8888
            inPreferredColorSpace = ColorSpace.get(ColorSpace.Named.SRGB)
        }
        val decoded = contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
        if (decoded == null) {
            status.text = "Cannot decode $uri as an image"
            return
        }
        bitmap = decoded
        imageView.setImageBitmap(decoded)
        ask.isEnabled = module != null
    }

    /** prefillPrompt(text before the image) -> prefillImages(pixels) -> generate(the rest), streaming. */
    private fun askQuestion() {
        val loaded = module ?: return
        val manifest = model?.manifest ?: return
        val picture = bitmap ?: run { status.text = getString(R.string.no_image); return }
        val prompt = try {
            Prompt.forQuestion(manifest.prompt, question.text.toString())
        } catch (e: IllegalArgumentException) {
            status.text = e.message ?: e.toString()
            return
        }
        val stream = TokenStream(manifest.eosTexts, MAX_ANSWER_TOKENS)
        generating = true
        ask.text = getString(R.string.stop)
        answer.text = ""
        stats.text = ""
        worker.execute {
            try {
                val argb = IntArray(picture.width * picture.height)
                picture.getPixels(argb, 0, picture.width, 0, 0, picture.width, picture.height)
                val rgb = ImagePreprocessor.RgbImage.fromArgb(picture.width, picture.height, argb)
                val image = ImagePreprocessor(manifest.image).preprocess(rgb) // exactly the exporter's pixels
                loaded.resetContext()
                stream.markStart(System.nanoTime())
                loaded.prefillPrompt(prompt.prefillText)
                val imageStart = System.nanoTime()
                loaded.prefillImages(image, manifest.image.size, manifest.image.size, 3)
                stream.markImage(imageStart, System.nanoTime())
                loaded.generate(prompt.generateText, manifest.maxContextLen, object : LlmCallback {
                    override fun onResult(result: String) {
                        if (stream.accept(result, System.nanoTime())) loaded.stop()
                        runOnUiThread { answer.text = stream.text() }
                    }

                    override fun onError(errorCode: Int, message: String) {
                        runOnUiThread { status.text = "ExecuTorch error $errorCode: $message" }
                    }
                }, false)
            } catch (e: Exception) {
                runOnUiThread { status.text = "Generation failed: ${e.message}" }
            } finally {
                generating = false
                runOnUiThread {
                    answer.text = stream.text()
                    stats.text = stream.summary()
                    ask.text = getString(R.string.ask)
                }
            }
        }
    }

    companion object {
        const val MAX_ANSWER_TOKENS = 128
    }
}
