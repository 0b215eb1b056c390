// Greedy answers from an exported vlsi_edge directory, the way a transformers.js app would get them:
// AutoProcessor (chat template -> Idefics3Processor: image + text) and Idefics3ForConditionalGeneration.
//
//   node generate.mjs <export_dir> <items.json> [dtype]     (no dtype: the library's default for the device)
//
// items.json: [{"image": "/path/a.png", "messages": [{"role": "user", "content": [...]}]}, ...]
// dtype picks the ONNX files by suffix: fp32 -> onnx/*.onnx, int8 -> onnx/*_int8.onnx, q8 -> *_quantized, ...
// Prints one JSON line: [{"prompt", "input_ids", "answer"}, ...] in item order.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { AutoProcessor, Idefics3ForConditionalGeneration, RawImage, env } from '@huggingface/transformers';

const [exportDir, itemsPath, dtype] = process.argv.slice(2);
if (!exportDir || !itemsPath) {
    console.error('usage: node generate.mjs <export_dir> <items.json> [dtype]');
    process.exit(2);
}

// Local files only: models resolve as <localModelPath>/<name>, nothing is fetched.
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(exportDir));
const name = path.basename(path.resolve(exportDir));
const options = { local_files_only: true };

const processor = await AutoProcessor.from_pretrained(name, options);
const model = await Idefics3ForConditionalGeneration.from_pretrained(name, { ...options, ...(dtype ? { dtype } : {}), device: 'cpu' });

const results = [];
for (const item of JSON.parse(await readFile(itemsPath, 'utf8'))) {
    const image = await RawImage.read(item.image);
    const prompt = processor.apply_chat_template(item.messages, { add_generation_prompt: true });
    const inputs = await processor(prompt, [image]);
    // No max_new_tokens: the export's generation_config.json sets it, as it must for any app that passes none.
    const sequences = await model.generate({ ...inputs, do_sample: false });
    const promptLength = inputs.input_ids.dims.at(-1);
    const [answer] = processor.batch_decode(sequences.slice(null, [promptLength, null]), { skip_special_tokens: true });
    results.push({ prompt, input_ids: Array.from(inputs.input_ids.data, Number), answer: answer.trim() });
}
console.log(JSON.stringify(results));
