@file:Suppress("UNUSED_PARAMETER", "unused")
package androidx.activity.result
class PickVisualMediaRequest
fun PickVisualMediaRequest(mediaType: androidx.activity.result.contract.ActivityResultContracts.PickVisualMedia.VisualMediaType): PickVisualMediaRequest = PickVisualMediaRequest()
abstract class ActivityResultLauncher<I> { abstract fun launch(input: I) }
