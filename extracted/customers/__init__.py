"""The extracted customers service: clean model, own database, cursor pagination."""
