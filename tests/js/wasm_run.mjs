// Runs ONNX graphs on onnxruntime-web's WASM backend (what transformers.js uses in a browser without WebGPU),
// in Node. Each job: one graph, its inputs as raw little-endian files; each output is written as <out>/<name>.bin
// plus <out>/<name>.json ({"dims", "type"}).
//
//   node wasm_run.mjs <jobs.json>
//
// jobs.json: [{"model": "/x/onnx/decoder_model_merged_quantized.onnx", "out": "/tmp/o",
//              "inputs": {"input_ids": {"type": "int64", "dims": [1, 5], "file": "/tmp/i.bin"}, ...}}, ...]
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import * as ort from 'onnxruntime-web';

const ARRAYS = { float32: Float32Array, int64: BigInt64Array };

for (const job of JSON.parse(await readFile(process.argv[2], 'utf8'))) {
    const session = await ort.InferenceSession.create(job.model, { executionProviders: ['wasm'] });
    const feeds = {};
    for (const [name, input] of Object.entries(job.inputs)) {
        const bytes = await readFile(input.file);
        const data = new ARRAYS[input.type](bytes.buffer, bytes.byteOffset, bytes.byteLength / ARRAYS[input.type].BYTES_PER_ELEMENT);
        feeds[name] = new ort.Tensor(input.type, data, input.dims);
    }
    const outputs = await session.run(feeds);
    for (const [name, tensor] of Object.entries(outputs)) {
        const data = tensor.data;
        await writeFile(path.join(job.out, `${name}.bin`), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        await writeFile(path.join(job.out, `${name}.json`), JSON.stringify({ dims: tensor.dims, type: tensor.type }));
    }
    await session.release();
}
console.log('ok');
