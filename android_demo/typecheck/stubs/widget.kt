@file:Suppress("UNUSED_PARAMETER", "unused")
package android.widget
import android.view.View
open class TextView : View() { open var text: CharSequence = ""; fun setText(id: Int) {} }
open class Button : TextView()
class EditText : TextView() { override var text: CharSequence = ""; fun setText(s: String) {} }
class ImageView : View() { fun setImageBitmap(b: android.graphics.Bitmap?) {} }
class ProgressBar : View() { var progress: Int = 0 }
