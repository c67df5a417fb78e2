"""services/gateway/dashboard: the Streamlit app (app.py) and its API client and views."""
