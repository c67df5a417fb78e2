# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-slow test-all lint bench-codec check-deploy clean kafka

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,monthly,kafka,ml,dev]'  # + kcl: $(KCL) below
	touch $(STAMP)

## make kafka: Apache Kafka's jars from Maven Central for the Kafka tests (Java 17+, Maven)
KAFKA_LIBS := build/kafka/libs/.fetched
kafka: $(KAFKA_LIBS)
$(KAFKA_LIBS): deploy/kafka/pom.xml
	@if command -v mvn >/dev/null && command -v java >/dev/null; then \
	  rm -rf build/kafka/libs && mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/build/kafka/libs && touch $@; \
	else echo "Apache Kafka not fetched: install Java 17+ and Maven (its tests will skip)"; fi

# The `kcl` extra: the KCL MultiLangDaemon's jars (Maven, cached in build/kcl/m2) and
# amazon-kclpy against them; without Java/Maven it says so in one line and the daemon tests skip.
KCL := build/kcl/.installed
$(KCL): $(STAMP) deploy/kcl/pom.xml deploy/kcl/install_kclpy.py
	$(BIN)/python deploy/kcl/install_kclpy.py --python $(BIN)/python
	if ls build/kcl/jars/amazon-kinesis-client-multilang-*.jar >/dev/null 2>&1; then touch $@; fi

## make run: local AWS stack + handlers + the shipped real-data slice (Ctrl-C stops)
run: $(STAMP)
	$(BIN)/wattstream run

## make test: the default (fast) test suite, with lint
test: $(STAMP) $(KAFKA_LIBS) $(KCL)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

## make test-slow: long tests on the full real data set (../shared/data)
test-slow: $(STAMP) $(KAFKA_LIBS) $(KCL)
	$(BIN)/pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: no slow test selected

test-all: test test-slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-codec: $(STAMP)
	$(BIN)/python -m bench codec

## make check-deploy: cfn-lint, sam validate --lint, sam build of every zip function, sizes
check-deploy: $(STAMP)
	bash deploy/check.sh

clean:
	rm -rf $(VENV) .wattstream build *.egg-info
