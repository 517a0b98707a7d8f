"""Sample-quality scores of generated MNIST digits, Fashion-MNIST items and shapes scenes,
measured with in-project classifiers.

``classifier`` (the cached CNN: features and probabilities), ``fid`` (Fréchet distance,
numpy), ``report`` (the scores and their real-data references), ``scenes`` and ``scene_report`` (the
shape + colour classifier and prompt accuracy on ``shapes``), ``draw`` (samples from a
running server through the SDK) and ``cli`` (``latentserve eval-samples``).
"""

from pathlib import Path

# Here, not in ``classifier``, so the CLI can name it without importing torch.
DEFAULT_CLASSIFIER_DIR = Path("runs/classifiers/mnist")
DEFAULT_FASHION_CLASSIFIER_DIR = Path("runs/classifiers/fashion-mnist")
#: The classifier cache of each dataset ``eval-samples`` scores 28x28 images of.
CLASSIFIER_DIRS = {"mnist": DEFAULT_CLASSIFIER_DIR, "fashion-mnist": DEFAULT_FASHION_CLASSIFIER_DIR}
DEFAULT_SCENE_CLASSIFIER_DIR = Path("runs/classifiers/shapes")
