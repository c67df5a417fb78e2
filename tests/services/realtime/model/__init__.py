"""Tests of the realtime model: training, evaluation, export, SageMaker packaging."""
