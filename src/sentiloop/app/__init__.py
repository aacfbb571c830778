"""The review and dashboard web app (Streamlit): see streamlit_app.py; logic.py holds what its pages compute."""
