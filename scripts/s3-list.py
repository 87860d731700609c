#!/usr/bin/env python3
"""Lists the keys under a prefix of the S3 test bucket, one per line.

Signs a ListObjectsV2 request with AWS SigV4 using only the standard library,
so it works against MinIO and SeaweedFS alike. Reads STREAMHOUSE_TEST_S3_*
and AWS_* variables (see scripts/s3-server.sh env).
"""
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


def sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def list_keys(prefix):
    endpoint = os.environ["STREAMHOUSE_TEST_S3_ENDPOINT"].rstrip("/")
    bucket = os.environ["STREAMHOUSE_TEST_S3_BUCKET"]
    region = os.environ.get("STREAMHOUSE_TEST_S3_REGION", "us-east-1")
    access, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    host = urllib.parse.urlparse(endpoint).netloc
    keys, token = [], None
    while True:
        params = {"list-type": "2", "prefix": prefix}
        if token:
            params["continuation-token"] = token
        query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(params.items())
        )
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(b"").hexdigest()
        canonical = "\n".join([
            "GET", f"/{bucket}", query,
            f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n",
            "host;x-amz-content-sha256;x-amz-date", payload_hash,
        ])
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = sign(sign(sign(sign(("AWS4" + secret).encode(), day), region), "s3"), "aws4_request")
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(f"{endpoint}/{bucket}?{query}", headers={
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload_hash,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                             f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
        })
        with urllib.request.urlopen(req, timeout=30) as resp:
            root = ET.fromstring(resp.read())
        ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
        find = (lambda e, t: e.findall(f"s3:{t}", ns)) if ns else (lambda e, t: e.findall(t))
        for c in find(root, "Contents"):
            keys.append(find(c, "Key")[0].text)
        truncated = find(root, "IsTruncated")
        nxt = find(root, "NextContinuationToken")
        if truncated and truncated[0].text == "true" and nxt:
            token = nxt[0].text
        else:
            return keys


if __name__ == "__main__":
    for key in list_keys(sys.argv[1] if len(sys.argv) > 1 else ""):
        print(key)
