"""The challenge's scores: macro and micro F1 (scikit-learn's f1_score)."""


def f1_scores(y_true, y_pred) -> dict[str, float]:
    """Macro and micro F1 as the challenge scores them.

    Macro F1 averages over the classes present in y_true or y_pred, as scikit-learn does.
    """
    from sklearn.metrics import f1_score

    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
    }
