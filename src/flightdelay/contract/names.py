"""The names that tie the pieces together: release writes them; serving and tracking read them."""

BENTO_NAME = "flight-delay"  # the Bento and its image
MODEL_NAME = "flight-delay-model"  # the model in the BentoML store
MODEL_FILE = "model.joblib"  # the pickled Pipeline inside that model (kept as the reference)
REGISTERED_MODEL = "flight-delay"  # the model in the MLflow registry
EXPERIMENT = "flight-delay"  # the MLflow experiment of train runs
CHAMPION = "champion"  # the registry alias of the promoted model
CARD_FILES = {"html": "model_card.html", "md": "model_card.md"}  # the model card, by format
