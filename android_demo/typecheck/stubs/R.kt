package org.vlsiedge.demo
object R {
    object layout { const val activity_main = 1 }
    object id { const val modelDir = 1; const val status = 2; const val progress = 3; const val image = 4; const val question = 5; const val ask = 6; const val answer = 7; const val stats = 8; const val load = 9; const val pick = 10; const val photo = 11 }
    object string { const val stop = 1; const val ask = 2; const val no_model = 3; const val no_image = 4 }
}
