"""Data for the book: MovieLens-100K, feature encoding and the evaluation protocols."""
from .crosses import CROSSES, Cross, Crosses, build_crosses, ctr_crosses
from .features import N_RESERVED, PAD, ROLES, UNK, Field, Schema
from .movielens import GENRES, SOURCES, DataUnavailableError, MovieLens100K, default_cache_dir, load_movielens100k
from .protocols import (
    AGE_BUCKETS,
    CTR_FIELDS,
    FIELD_ROLES,
    YEAR_BUCKETS,
    CTRData,
    ItemCatalogue,
    SequenceData,
    age_bucket,
    behaviour_histories,
    chronological_split,
    ctr_frame,
    ctr_protocol,
    ctr_schema,
    encode_ctr,
    item_catalogue,
    item_field,
    leave_last_out,
    sequence_protocol,
    time_order,
    year_bucket,
)
from .tensors import TensorData
from .titles import display_titles, duplicate_titles

__all__ = [
    "AGE_BUCKETS", "CTR_FIELDS", "DataUnavailableError", "FIELD_ROLES", "GENRES", "N_RESERVED", "PAD",
    "ROLES", "SOURCES", "UNK", "YEAR_BUCKETS", "CTRData", "Field", "ItemCatalogue", "MovieLens100K",
    "Schema", "SequenceData", "TensorData", "age_bucket", "behaviour_histories", "chronological_split",
    "ctr_frame", "ctr_protocol", "ctr_schema", "default_cache_dir", "encode_ctr", "item_catalogue",
    "item_field", "leave_last_out", "load_movielens100k", "sequence_protocol", "time_order",
    "year_bucket",
]
__all__ += ["display_titles", "duplicate_titles"]
__all__ += ["CROSSES", "Cross", "Crosses", "build_crosses", "ctr_crosses"]
