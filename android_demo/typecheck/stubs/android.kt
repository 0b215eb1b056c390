@file:Suppress("UNUSED_PARAMETER", "unused")
package android.graphics
class Rect
object BitmapFactory {
    class Options { @JvmField var inPreferredConfig: Bitmap.Config? = null; @JvmField var inPreferredColorSpace: ColorSpace? = null }
    @JvmStatic fun decodeStream(s: java.io.InputStream?, r: Rect?, o: Options?): Bitmap? = null
}
abstract class ColorSpace {
    enum class Named { SRGB }
    companion object { @JvmStatic fun get(name: Named): ColorSpace = throw Error() }
}
