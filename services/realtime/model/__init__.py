"""The realtime model: training, evaluation, export, SageMaker packaging.

TensorFlow-free (safe in the Lambda and the streaming core): ``data`` (binning and the
gap policy), ``config`` (model shapes), ``bundle`` (bundle layout, shipped bundle, S3
upload/download), ``evaluation``'s baselines. Batch inference on the LiteRT flatbuffer
is :class:`services.realtime.backends.LiteRtModel`, for serving and evaluation alike.
Need TensorFlow (``pip install -e '.[ml]'``): ``training``, ``export``, ``sagemaker``
packaging (it exports a SavedModel when the bundle has none).
"""
