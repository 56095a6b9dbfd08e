"""Full-ranking evaluation on item ids: one protocol for every method in a run."""

from pitrec.eval.evaluator import Evaluator, Ranker, topk_from_scores
from pitrec.eval.metrics import rank_metrics

__all__ = ["Evaluator", "Ranker", "rank_metrics", "topk_from_scores"]
