// The Node SDK's flushSync (or flushAllSync for {"all": true}), driven by bench_flush.py over stdin/stdout (one JSON object a line).
// It counts the GetFlushState calls flushSync makes and the CPU the process spends.
const readline = require("readline");
const { MilvusClient } = require("@zilliz/milvus2-sdk-node");

const client = new MilvusClient({ address: process.argv[2] });
let polls = 0;
const getFlushState = client.getFlushState.bind(client);
client.getFlushState = async (data) => {
  polls += 1;
  return getFlushState(data);
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const { names, all } = JSON.parse(line);
  polls = 0;
  const cpu = process.cpuUsage();
  try {
    const res = all ? await client.flushAllSync({}) : await client.flushSync({ collection_names: names });
    const used = process.cpuUsage(cpu);
    process.stdout.write(
      JSON.stringify({ ok: true, flushed: !!res.flushed, polls, cpu_s: (used.user + used.system) / 1e6 }) + "\n",
    );
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + "\n");
  }
});
rl.on("close", () => client.closeConnection().finally(() => process.exit(0)));
