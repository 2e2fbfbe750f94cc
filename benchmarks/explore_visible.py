"""#30 feasibility: a writer process's rows read by a reader process (own client) at a
delay after the write: the collection's default, Strong, and Session after the reader
set pymilvus's collection timestamp to a ticket (the writer's AllocTimestamp after its
insert, or the insert's own timestamp)."""
import sys, time, statistics, multiprocessing as mp
sys.path.insert(0, "/work/main")

def writer(uri, name, conn):
    from pymilvus import MilvusClient
    from pymilvus.grpc_gen import milvus_pb2
    from tests.helpers import rows
    c = MilvusClient(uri)
    stub = c._get_connection()._stub
    while True:
        k = conn.recv()
        if k is None: return
        res = c.insert(name, rows(k * 100, 100))
        alloc = stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest()).timestamp
        conn.send((alloc, int(res.get("timestamp", 0) if isinstance(res, dict) else 0)))

def reader(uri, name, conn):
    from pymilvus import MilvusClient
    from pymilvus.client import ts_utils
    c = MilvusClient(uri)
    c.load_collection(name)
    h = c._get_connection()
    while True:
        msg = conn.recv()
        if msg is None: return
        k, mode, ts = msg
        kw = {}
        if mode == "strong": kw["consistency_level"] = "Strong"
        if mode.startswith("ticket"):
            ts_utils.update_collection_ts(name, ts, h.server_address, "")
            kw["consistency_level"] = "Session"
        t = time.monotonic()
        got = c.query(name, filter=f"id >= {k*100} and id < {k*100+100}", output_fields=["count(*)"], **kw)
        conn.send((got[0]["count(*)"], (time.monotonic() - t) * 1000))

if __name__ == "__main__":
    from tests.servers import Standalone
    from pymilvus import MilvusClient
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    server = Standalone({})
    try:
        uri = f"http://127.0.0.1:{server.port}"
        admin = MilvusClient(uri)
        admin.create_collection("vis", dimension=8)
        ctx = mp.get_context("spawn")
        wa, wb = ctx.Pipe(); ra, rb = ctx.Pipe()
        pw = ctx.Process(target=writer, args=(uri, "vis", wb)); pr = ctx.Process(target=reader, args=(uri, "vis", rb))
        pw.start(); pr.start()
        modes = ["default", "strong", "ticket_alloc", "ticket_insert"]
        results = {(m, d): [] for m in modes for d in (0.0, 0.2, 1.0)}
        k = 0
        for t in range(trials):
            for d in (0.0, 0.2, 1.0):
                for m in modes:
                    wa.send(k); alloc, ins = wa.recv()
                    if d: time.sleep(d)
                    ra.send((k, m, alloc if m == "ticket_alloc" else ins)); count, ms = ra.recv()
                    results[(m, d)].append((count, ms))
                    k += 1
        wa.send(None); ra.send(None); pw.join(); pr.join()
        print("| read | delay s | stale | median ms | max ms |")
        for (m, d), v in results.items():
            stale = sum(1 for c, _ in v if c < 100)
            ms = [x for _, x in v]
            print(f"| {m} | {d} | {stale} of {len(v)} | {statistics.median(ms):.1f} | {max(ms):.1f} |")
    finally:
        server.stop()
