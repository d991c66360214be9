// Streams one prediction with the official client and prints each event as a JSON line.
// Usage: node stream.mjs <gateway API root, e.g. http://127.0.0.1:8000/v1> <key> <owner/name:version> <input JSON>
import Replicate from "replicate";

const [baseUrl, auth, ref, input] = process.argv.slice(2);
const replicate = new Replicate({ auth, baseUrl });
for await (const event of replicate.stream(ref, { input: JSON.parse(input) })) {
  console.log(JSON.stringify({ event: event.event, id: event.id, data: event.data }));
}
