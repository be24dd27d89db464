// Drives a running stipend proxy with the official OpenAI Node SDK, unchanged
// except for baseURL and apiKey, and prints what it saw as one JSON line.
// Usage: STIPEND_BASE_URL=http://127.0.0.1:8080/v1 STIPEND_KEY=sk-stp-... node sdk-check.mjs
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.STIPEND_BASE_URL, apiKey: process.env.STIPEND_KEY, maxRetries: 0 });
const out = {};

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  stream: true,
  messages: [{ role: "user", content: "Say hello" }],
});
out.streamChunks = 0;
out.streamText = "";
out.streamUsageSeen = false;
for await (const chunk of stream) {
  out.streamChunks++;
  if (chunk.usage) out.streamUsageSeen = true;
  out.streamText += chunk.choices[0]?.delta?.content ?? "";
}

const withUsage = await client.chat.completions.create({
  model: "gpt-4o-mini",
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "Say hello" }],
});
out.askedUsage = null;
for await (const chunk of withUsage) if (chunk.usage) out.askedUsage = chunk.usage;

const completion = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello" }],
});
out.completionText = completion.choices[0].message.content;
out.completionUsage = completion.usage;

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

const emb = await client.embeddings.create({ model: "text-embedding-3-small", input: "hello" });
out.embeddingLength = emb.data[0].embedding.length;

try {
  await new OpenAI({ baseURL: process.env.STIPEND_BASE_URL, apiKey: "sk-stp-wrong", maxRetries: 0 })
    .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] });
  out.badKey = "accepted";
} catch (e) {
  out.badKey = { status: e.status, code: e.code, type: e.type, isAuthError: e instanceof OpenAI.AuthenticationError };
}

console.log(JSON.stringify(out));
