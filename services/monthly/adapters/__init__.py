"""services/monthly/adapters: S3 (archive read, models bucket write), a local folder, data sets."""
