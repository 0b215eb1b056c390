@file:Suppress("UNUSED_PARAMETER", "unused")
package android.content
class ContentResolver { fun openInputStream(uri: android.net.Uri): java.io.InputStream? = null }
open class Context {
    fun getExternalFilesDir(type: String?): java.io.File? = null
    val cacheDir: java.io.File = java.io.File("/")
    val packageName: String = ""
    fun getString(id: Int): String = ""
    val contentResolver: ContentResolver = ContentResolver()
}
