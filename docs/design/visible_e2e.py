"""#30 end to end on the real 2.3.5 through the package: writer flush_sync(until="visible")
-> ticket JSON -> reader wait_flushed(ticket, until="visible") -> Session query."""

import multiprocessing as mp
import statistics
import sys
import time

sys.path.insert(0, "/work/main")


def writer(uri, name, conn):
    from pymilvus_flushsync import MilvusClient
    from tests.helpers import rows

    c = MilvusClient(uri)
    while (k := conn.recv()) is not None:
        c.insert(name, rows(k * 100, 100))
        t = time.monotonic()
        r = c.flush_sync([name], timeout=10, until="visible")
        conn.send((r.ticket.to_json(), (time.monotonic() - t) * 1000, r.stage, r.flushed))


def reader(uri, name, conn):
    from pymilvus_flushsync import FlushTicket, MilvusClient

    c = MilvusClient(uri)
    c.load_collection(name)
    while (msg := conn.recv()) is not None:
        k, text, mode = msg
        t = time.monotonic()
        kw = {}
        if mode == "ticket":
            c.wait_flushed(FlushTicket.from_json(text), timeout=10, until="visible")
            kw["consistency_level"] = "Session"
        got = c.query(
            name,
            filter=f"id >= {k * 100} and id < {k * 100 + 100}",
            output_fields=["count(*)"],
            **kw,
        )
        conn.send((got[0]["count(*)"], (time.monotonic() - t) * 1000))


if __name__ == "__main__":
    from pymilvus import MilvusClient

    from tests.servers import Standalone

    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    server = Standalone({})
    try:
        uri = f"http://127.0.0.1:{server.port}"
        MilvusClient(uri).create_collection("vis", dimension=8)
        ctx = mp.get_context("spawn")
        wa, wb = ctx.Pipe()
        ra, rb = ctx.Pipe()
        procs = [
            ctx.Process(target=writer, args=(uri, "vis", wb)),
            ctx.Process(target=reader, args=(uri, "vis", rb)),
        ]
        for p in procs:
            p.start()
        out = {"default": [], "ticket": []}
        writes = []
        k = 0
        for _ in range(trials):
            for mode in ("default", "ticket"):
                wa.send(k)
                text, ms, stage, flushed = wa.recv()
                writes.append(ms)
                ra.send((k, text, mode))
                out[mode].append(ra.recv())
                k += 1
        wa.send(None)
        ra.send(None)
        for p in procs:
            p.join()
        print(
            f"writer flush_sync(until='visible'): median {statistics.median(writes):.1f} ms,"
            f" max {max(writes):.1f} ms; stage {stage}, flushed {flushed}"
        )
        for mode, v in out.items():
            ms = [x for _, x in v]
            print(
                f"{mode}: stale {sum(c < 100 for c, _ in v)} of {len(v)}, read median"
                f" {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms"
            )
    finally:
        server.stop()
