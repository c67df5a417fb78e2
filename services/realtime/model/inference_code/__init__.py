"""``code/`` of the SageMaker archive: ``inference.py`` ships as is (see ``sagemaker.py``)."""
