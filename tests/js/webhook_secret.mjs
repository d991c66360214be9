// The official JS client (replicate@1.4.0) reads the tenant's webhook signing secret from the gateway.
// Usage: GATEWAY_URL=http://127.0.0.1:8000/v1 GATEWAY_KEY=gwk_... node tests/js/webhook_secret.mjs
import Replicate from "replicate";

const replicate = new Replicate({ auth: process.env.GATEWAY_KEY, baseUrl: process.env.GATEWAY_URL });
const secret = await replicate.webhooks.default.secret.get();
process.stdout.write(JSON.stringify(secret));
