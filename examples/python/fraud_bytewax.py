"""The fraud example as a Bytewax dataflow: card transactions from examples/fraud/stream.csv
flow through Bytewax's CSV source into a streamscore Runtime that computes the spec's
streaming features per card and scores them with the LightGBM model, in one process.

    pip install ./python bytewax==0.21.1
    python examples/python/fraud_bytewax.py            # prints the flagged transactions

`score_stream()` returns (transaction index, score) for every event; python/tests runs it and
checks every score against Features.transform + Model.predict offline, bit for bit.
"""

import pathlib

import bytewax.operators as op
from bytewax.connectors.files import CSVSource
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

import streamscore

ROOT = pathlib.Path(__file__).resolve().parents[2]
FRAUD = ROOT / "examples" / "fraud"


def score_stream(path=FRAUD / "stream.csv"):
    features = streamscore.Features(FRAUD / "spec.toml")
    answers = []
    # One worker, the stream in file order: each card's events reach the feature stage in
    # time order, as the spec's windows expect (with more workers, key the flow by card).
    with streamscore.Runtime(FRAUD / "model.txt", features=FRAUD / "spec.toml", max_delay_us=0) as rt:
        flow = Dataflow("fraud")
        rows = op.input("transactions", flow, CSVSource(pathlib.Path(path)))
        counter = iter(range(1 << 62))  # one worker: rows arrive in file order
        numbered = op.map("number", rows, lambda row: (next(counter), row))

        def score(item):
            i, row = item
            values, key, t = features.event(row)
            return i, float(rt.score(values, key=key, timestamp_ms=t)[0])

        op.output("scores", op.map("score", numbered, score), TestingSink(answers))
        run_main(flow)
    return answers


if __name__ == "__main__":
    scored = score_stream()
    flagged = [(i, s) for i, s in scored if s > 0.5]
    print(f"{len(scored)} transactions scored, {len(flagged)} above 0.5")
    for i, s in flagged[:10]:
        print(f"  transaction {i}: {s:.3f}")
