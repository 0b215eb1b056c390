@file:Suppress("UNUSED_PARAMETER", "unused")
package android.view
open class View {
    interface OnClickListener { fun onClick(v: View) }
    fun setOnClickListener(l: OnClickListener?) {}
    fun setOnClickListener(l: (View) -> Unit) {}
    var visibility: Int = 0
    var isEnabled: Boolean = true
    companion object { const val VISIBLE = 0; const val GONE = 8 }
}
