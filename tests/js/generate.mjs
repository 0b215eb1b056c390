// Greedy answers from an exported vlsi_edge directory, the way a transformers.js app would get them:
// AutoProcessor (chat template -> the family's processor: image + text) and AutoModelForImageTextToText
// (Idefics3, LLaVA, Qwen2-VL).
//
//   node generate.mjs <export_dir> <items.json> [dtype] [pixels_dir]   (no dtype: the library's default for the device)
//
// items.json: [{"image": "/path/a.png", "messages": [{"role": "user", "content": [...]}]}, ...]
// dtype picks the ONNX files by suffix: fp32 -> onnx/*.onnx, int8 -> onnx/*_int8.onnx, q8 -> *_quantized, ...
// An export whose manifest.json says the programs take one grid (Qwen2-VL) gets its images stretched to the
// manifest's size first, as docs/EXPORT.md tells its users. pixels_dir: each item's pixel_values as
// <pixels_dir>/<i>.f32 (float32 little-endian), to compare runtimes on the very same pixels.
// Prints one JSON line: [{"prompt", "input_ids", "answer"}, ...] in item order.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { AutoModelForImageTextToText, AutoProcessor, RawImage, env } from '@huggingface/transformers';

const [exportDir, itemsPath, dtype, pixelsDir] = process.argv.slice(2);
if (!exportDir || !itemsPath) {
    console.error('usage: node generate.mjs <export_dir> <items.json> [dtype] [pixels_dir]');
    process.exit(2);
}

// Local files only: models resolve as <localModelPath>/<name>, nothing is fetched.
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(exportDir));
const name = path.basename(path.resolve(exportDir));
const options = { local_files_only: true };

const processor = await AutoProcessor.from_pretrained(name, options);
const model = await AutoModelForImageTextToText.from_pretrained(name, { ...options, ...(dtype ? { dtype } : {}), device: 'cpu' });
const manifestPath = path.join(exportDir, 'manifest.json');
const spec = existsSync(manifestPath) ? JSON.parse(await readFile(manifestPath, 'utf8')).image : null;

const results = [];
for (const [i, item] of JSON.parse(await readFile(itemsPath, 'utf8')).entries()) {
    let image = await RawImage.read(item.image);
    if (spec?.resize === 'stretch_to_square_then_patches') {
        image = await image.resize(spec.size, spec.size, { resample: spec.resample });
    }
    const prompt = processor.apply_chat_template(item.messages, { add_generation_prompt: true });
    // transformers.js' LLaVA processor takes (images, text); its Idefics3 and Qwen2-VL processors (text, images).
    const inputs = model.config.model_type === 'llava' ? await processor(image, prompt) : await processor(prompt, [image]);
    if (pixelsDir) {
        const pixels = inputs.pixel_values.data;
        await writeFile(path.join(pixelsDir, `${i}.f32`), Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength));
    }
    // No max_new_tokens: the export's generation_config.json sets it, as it must for any app that passes none.
    const sequences = await model.generate({ ...inputs, do_sample: false });
    const promptLength = inputs.input_ids.dims.at(-1);
    const [answer] = processor.batch_decode(sequences.slice(null, [promptLength, null]), { skip_special_tokens: true });
    results.push({ prompt, input_ids: Array.from(inputs.input_ids.data, Number), answer: answer.trim() });
}
console.log(JSON.stringify(results));
