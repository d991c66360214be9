"""Files: the service, download and upload signatures, input resolution and blob storage."""

from gateway.files.inputs import InputFiles
from gateway.files.s3 import S3Access, S3Location, S3Storage
from gateway.files.service import DEFAULT_CONTENT_TYPE, FileLimits, FilePage, Files, Upload, prediction_owners, too_large_detail
from gateway.files.signing import DownloadSignatures, UploadTokens
from gateway.files.storage import FileStorage, LocalStorage

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DownloadSignatures",
    "FileLimits",
    "FilePage",
    "FileStorage",
    "Files",
    "InputFiles",
    "LocalStorage",
    "S3Access",
    "S3Location",
    "S3Storage",
    "Upload",
    "UploadTokens",
    "prediction_owners",
    "too_large_detail",
]
