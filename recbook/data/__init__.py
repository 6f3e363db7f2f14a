"""Data for the book: MovieLens-100K, feature encoding and the evaluation protocols."""
from .crosses import CROSSES, Cross, Crosses, build_crosses, ctr_crosses
from .features import PAD, UNK, Field, Schema
from .movielens import GENRES, SOURCES, DataUnavailableError, MovieLens100K, default_cache_dir, load_movielens100k
from .protocols import (
    AGE_BUCKETS,
    CTR_FIELDS,
    YEAR_BUCKETS,
    CTRData,
    SequenceData,
    age_bucket,
    behaviour_histories,
    chronological_split,
    ctr_frame,
    ctr_protocol,
    ctr_schema,
    encode_ctr,
    leave_last_out,
    year_bucket,
)
from .tensors import TensorData

__all__ = [
    "AGE_BUCKETS", "CTR_FIELDS", "DataUnavailableError", "GENRES", "SOURCES", "PAD", "UNK", "YEAR_BUCKETS", "CTRData", "Field",
    "MovieLens100K", "Schema", "SequenceData", "TensorData", "age_bucket", "behaviour_histories",
    "chronological_split", "ctr_frame", "ctr_protocol", "ctr_schema", "default_cache_dir",
    "encode_ctr", "leave_last_out", "load_movielens100k", "year_bucket",
]
__all__ += ["CROSSES", "Cross", "Crosses", "build_crosses", "ctr_crosses"]
