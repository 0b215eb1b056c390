package androidx.appcompat.app;
import androidx.activity.result.ActivityResultCallback;
import androidx.activity.result.ActivityResultLauncher;
import androidx.activity.result.contract.ActivityResultContract;
public class AppCompatActivity extends android.content.Context {
  protected void onCreate(android.os.Bundle savedInstanceState) {}
  protected void onDestroy() {}
  public void setContentView(int id) {}
  public <T extends android.view.View> T findViewById(int id) { return null; }
  public final void runOnUiThread(Runnable r) {}
  public final <I, O> ActivityResultLauncher<I> registerForActivityResult(ActivityResultContract<I, O> c, ActivityResultCallback<O> cb) { return null; }
}
