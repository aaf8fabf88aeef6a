// Runs the TensorFlow.js graph model on raw float32 inputs and writes its outputs:
//   node reference.js MODEL.json INPUT.f32 OUT_PREFIX N SIZE OUTPUT...
// INPUT.f32 holds N images of SIZE×SIZE×3 float32 (little-endian, NHWC). For each
// output tensor T named it writes OUT_PREFIX.T.f32 (all N images, one after another).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const { loadGraphModel } = require('@tensorflow/tfjs-converter');

async function main() {
  const [modelPath, inputPath, outPrefix, nArg, sizeArg, ...names] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const json = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  const bin = fs.readFileSync(path.join(path.dirname(modelPath), json.weightsManifest[0].paths[0]));
  const handler = {
    load: async () => ({
      modelTopology: json.modelTopology, weightSpecs,
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
      userDefinedMetadata: json.userDefinedMetadata,
    }),
  };
  const model = await loadGraphModel(handler);
  const n = Number(nArg);
  const raw = fs.readFileSync(inputPath);
  const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const chunks = Object.fromEntries(names.map((k) => [k, []]));
  const side = Number(sizeArg);
  const size = side * side * 3;
  for (let i = 0; i < n; i++) {
    const x = tf.tensor(all.subarray(i * size, (i + 1) * size), [1, side, side, 3]);
    let outs = await model.executeAsync(x, names);
    if (!Array.isArray(outs)) outs = [outs]; // one output name: one tensor
    for (let k = 0; k < names.length; k++) chunks[names[k]].push(Buffer.from((await outs[k].data()).buffer));
    tf.dispose([x, ...outs]);
  }
  for (const k of names) fs.writeFileSync(`${outPrefix}.${k}.f32`, Buffer.concat(chunks[k]));
}
main().catch((e) => { console.error(e); process.exit(1); });
