"""The faust host: the template's Kinesis functions as Kafka consumers (:mod:`.worker`)."""
