"""``--model`` and ``--dataset`` of every ``cimc-rl`` command: one lookup for each, and their fit.

A model is a zoo name or a user's ``FILE.py:FUNCTION`` (:mod:`cimc.models.user`); a data set is a
built-in name, a user's ``FILE.npz`` or ``FILE.py:FUNCTION`` (:mod:`cimc.user_data`). A user's
file is loaded and checked here, before any work, and named canonically (absolute path) from
then on: in checkpoints, summaries and on search workers. A data set must fit the model: the
shape of one sample is the model's input shape and every label is below its number of outputs.
"""

from __future__ import annotations

from cimc.errors import CimcError

MODEL_HELP = ("Zoo model (lenet, resnet_small, resnet20, vit_small, resnet18, vgg16, vit_b32) or "
              "FILE.py:FUNCTION, a function returning a float torch.nn.Module (runs that file's code).")
DATASET_HELP = ("fashion_mnist, mnist, digits, FILE.npz (x_train, y_train, x_val, y_val, "
                "optional x_test, y_test) or FILE.py:FUNCTION returning those arrays as a dict "
                "(runs that file's code).")


def resolve_model_name(model: str) -> str:
    """The model's canonical name (a zoo name, or ``ABS/FILE.py:FUNCTION`` once it loads)."""
    from cimc.models import resolve_model
    from cimc.models.user import is_user_model
    from cimc.models.zoo import MODEL_NAMES

    if not is_user_model(model) and model not in MODEL_NAMES:
        raise CimcError(f"--model: unknown model '{model}'; known: {', '.join(MODEL_NAMES)}, "
                        "or FILE.py:FUNCTION")
    return resolve_model(model)


def resolve_dataset_name(dataset: str) -> str:
    """The data set's canonical name (built-in, or an absolute ``.npz`` / ``.py:FUNCTION``)."""
    from cimc.data import DATASETS, resolve_dataset
    from cimc.user_data import is_user_dataset

    if not is_user_dataset(dataset) and dataset not in DATASETS:
        raise CimcError(f"--dataset: unknown data set '{dataset}'; known: {', '.join(DATASETS)}, "
                        "FILE.npz or FILE.py:FUNCTION")
    return resolve_dataset(dataset)


def check_fit(model: str, dataset: str) -> None:
    """Refuse a data set whose samples or labels do not fit the model, with one line."""
    from cimc.data import dataset_facts
    from cimc.models import input_shape, num_classes

    shape, (label_array, max_label) = dataset_facts(dataset)
    want = tuple(input_shape(model))
    if tuple(shape) != want:
        raise CimcError(f"--dataset {dataset}: samples of shape {tuple(shape)}; model {model} "
                        f"takes inputs of shape {want}")
    classes = num_classes(model)
    if max_label >= classes:
        raise CimcError(f"--dataset {dataset}: {label_array} has label {max_label}; model {model} "
                        f"has {classes} outputs (labels 0..{classes - 1})")


def resolve(model: str, dataset: str | None = None) -> tuple[str, str | None]:
    """``(model, dataset)`` canonical, loaded, checked and fitting each other."""
    model = resolve_model_name(model)
    if dataset is None:
        return model, None
    dataset = resolve_dataset_name(dataset)
    check_fit(model, dataset)
    return model, dataset
