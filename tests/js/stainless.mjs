// Drives Replicate's Stainless-generated TypeScript client (`replicate-stainless`) against a gateway, changing only
// its base URL: creates (waiting) and reads a prediction, lists predictions, reads the model and the account, and
// uploads a file with metadata (which this client sends as metadata[key] form fields). Prints what it got as JSON.
// Usage: node stainless.mjs <gateway API root, e.g. http://127.0.0.1:8000/v1> <key> <version id> <input JSON>
import Replicate, { toFile } from "replicate-stainless";

const [baseURL, bearerToken, version, input] = process.argv.slice(2);
const replicate = new Replicate({ baseURL, bearerToken, maxRetries: 0 });
const created = await replicate.predictions.create({ version, input: JSON.parse(input), Prefer: "wait=10" });
const got = await replicate.predictions.get({ prediction_id: created.id });
const listed = [];
for await (const prediction of replicate.predictions.list()) listed.push(prediction.id);
const [owner, name] = created.model.split("/");
const model = await replicate.models.get({ model_owner: owner, model_name: name });
const file = await replicate.files.create({
  content: await toFile(Buffer.from("hello"), "notes.txt", { type: "text/plain" }),
  metadata: { purpose: "mask", n: 1, tags: ["a", "b"], limits: { size: 2, exact: true } },
});
const account = await replicate.account.get();
console.log(JSON.stringify({ created, got, listed, model, file, account }));
