@file:Suppress("UNUSED_PARAMETER", "unused")
package androidx.activity.result.contract
import androidx.activity.result.PickVisualMediaRequest
abstract class ActivityResultContract<I, O>
class ActivityResultContracts {
    open class PickVisualMedia : ActivityResultContract<PickVisualMediaRequest, android.net.Uri?>() {
        interface VisualMediaType
        object ImageOnly : VisualMediaType
    }
    open class TakePicture : ActivityResultContract<android.net.Uri, Boolean>()
}
