# Placeholders: replace with the country account's real values before the first apply.
aws_account_id  = "333333333333"
certificate_arn = "arn:aws:acm:eu-north-1:333333333333:certificate/00000000-0000-0000-0000-000000000000"
image_registry  = "999999999999.dkr.ecr.eu-north-1.amazonaws.com/meridian"
image_tag       = "0000000"
