# MonthlyFunction as a container image: Prophet (with its compiled Stan model), pandas,
# numpy and matplotlib are ~310 MB unzipped, over a zip package's 250 MB; an image may be
# 10 GB. Built by `sam build` with Docker; the build context is the repository root
# (DockerContext: .. in the template), trimmed by the root .dockerignore.
FROM public.ecr.aws/lambda/python:3.12

COPY deploy/functions/requirements/layer.txt deploy/functions/requirements/monthly.txt /tmp/requirements/
RUN pip install --no-cache-dir -r /tmp/requirements/layer.txt -r /tmp/requirements/monthly.txt \
    && rm -rf /tmp/requirements

COPY shared ${LAMBDA_TASK_ROOT}/shared
COPY services/__init__.py ${LAMBDA_TASK_ROOT}/services/__init__.py
COPY services/monthly ${LAMBDA_TASK_ROOT}/services/monthly

# The template's ImageConfig.Command overrides this; both name the same handler.
CMD ["services.monthly.shells.lambda_handler.handler"]
