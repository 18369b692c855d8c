"""Model evaluation and dataset-level feature work, as plain functions over saved artifacts.

``roc`` (one-vs-rest ROC curves and AUC), ``errors`` (confusion, confused pairs,
misclassified windows, errors by severity and operating condition), ``compare``
(accuracy, size, FLOPs and latency of several models, Pareto front), ``robustness``
(accuracy under additive white Gaussian noise), ``predictors`` (a saved model as one
``predict_proba`` callable), ``feature_sets`` (features of a whole dataset, in record-range
shards, and saved feature selections), ``rankings`` (feature importance, selection and
correlation as reports with their files) and ``plots`` (PNG figures). Import the submodule
you need: each loads its own heavy libraries (torch, sklearn, matplotlib), so importing
this package stays light.
"""

__all__: list[str] = []
