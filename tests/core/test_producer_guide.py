"""docs/producers.md and its Python example (docs/examples/producer.py): the guide quotes the
example as it is. The example run against a real daemon: tests/system/test_producer_example.py."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "producer.py"
GUIDE = REPO / "docs" / "producers.md"


def test_the_guide_points_to_the_example_and_quotes_it_as_it_is() -> None:
    """docs/producers.md links the example, and its Python block is the example's own code
    (the settings a reader copies are the ones this module runs)."""
    guide = GUIDE.read_text()
    assert "](examples/producer.py)" in guide
    blocks = guide.split("```python\n")[1:]
    assert blocks, "the guide quotes the example's producer settings"
    for block in blocks:
        assert block.split("```", 1)[0] in EXAMPLE.read_text()
    assert '"partitioner": "murmur2_random"' in guide
