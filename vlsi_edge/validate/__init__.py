"""Validation of exported programs against the float student: accuracy, agreement, KL, latency, memory, gate.

    inputs.py  the test items (real rendered ShapesVQA images) as runtime inputs + the float reference
    worker.py  runs one artifact in its own process (clean peak-memory and timing numbers)
    report.py  metrics, gate verdicts, report.json / report.md / plot
"""
