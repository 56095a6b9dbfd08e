"""pitrec: generative recommendation with a learned, personalized item tokenizer (PIT).

The package is layered as a staged pipeline; see ``docs``/README for the map:
data -> embed -> tokenizers -> index -> models -> train -> decoding -> eval -> serve -> bench.
"""

__version__ = "0.1.0"
