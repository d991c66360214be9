#!/bin/sh
# The gateway's bucket and a MinIO user allowed only that bucket. Safe to run again.
set -eu

# Credentials through mc's environment, not its command line.
export MC_HOST_local="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio:9000"

mc mb --ignore-existing "local/${S3_BUCKET}"

cat > /tmp/gateway-files.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": ["arn:aws:s3:::${S3_BUCKET}"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": ["arn:aws:s3:::${S3_BUCKET}/*"]}
  ]
}
POLICY
mc admin policy create local gateway-files /tmp/gateway-files.json
mc admin user add local "${S3_ACCESS_KEY_ID}" "${S3_SECRET_ACCESS_KEY}"
# Attaching a policy the user already has is an error to mc; a second run leaves it as it is.
mc admin policy attach local gateway-files --user "${S3_ACCESS_KEY_ID}" || mc admin user info local "${S3_ACCESS_KEY_ID}"
